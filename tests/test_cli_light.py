"""`emonet --help` and usage errors answer without importing TensorFlow (it took 9-16 s and 700 MB).

Timing is a benchmark matter; what is tested here is the cause: TensorFlow stays out of the process.
"""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys
    from emonet_tf.cli import main
    for argv in (["--help"], ["predict", "--help"], ["predict", "--bogus"], ["activations", "x.jpg", "--sampling", "often"]):
        try:
            status = main(argv)
        except SystemExit as exit:
            status = exit.code
        print("STATUS", status)
    print("TENSORFLOW", "tensorflow" in sys.modules)
""")


def test_help_and_usage_errors_do_not_import_tensorflow():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert "TENSORFLOW False" in lines, proc.stdout[-2000:]
    statuses = [line.split()[1] for line in lines if line.startswith("STATUS ")]
    assert statuses == ["0", "0", "2", "2"], proc.stdout[-2000:]


CONVERT_SCRIPT = textwrap.dedent("""
    import runpy, sys
    for argv in (["--help"], ["src_only"], ["a", "b.keras", "--new-head", "many"]):
        sys.argv = ["python -m emonet_tf.weights", *argv]
        try:
            runpy.run_module("emonet_tf.weights", run_name="__main__")
            status = 0
        except SystemExit as exit:
            status = exit.code
        print("STATUS", status)
    print("TENSORFLOW", "tensorflow" in sys.modules)
""")


def test_python_dash_m_weights_is_emonet_convert_and_parses_without_tensorflow():
    proc = subprocess.run([sys.executable, "-c", CONVERT_SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert "TENSORFLOW False" in lines, proc.stdout[-2000:]
    assert [line.split()[1] for line in lines if line.startswith("STATUS ")] == ["0", "2", "2"], proc.stdout[-2000:]
    assert (
        "usage: emonet convert" in proc.stdout
        and "--new-head-classes N, --new_head_classes N, --new-head N" in proc.stdout
    ), proc.stdout[-3000:]
    assert proc.stderr.count("usage: emonet convert") == 2 and "Traceback" not in proc.stderr
