import subprocess
import sys

from kdeconv import __version__


def test_version_and_help(cli):
    result = cli("--version")
    assert result.exit_code == 0 and __version__ in result.output
    result = cli("--help")
    assert result.exit_code == 0 and "ingest" in result.output


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "kdeconv.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_unreachable_scheduler_is_exit_2_quickly():
    import pytest

    from kdeconv.cluster import ClusterConfig, open_client
    from kdeconv.errors import InputError

    with pytest.raises(InputError, match="cannot reach scheduler"):
        with open_client(ClusterConfig(scheduler_address="tcp://127.0.0.1:9", connect_timeout=3)):
            pass
    # (no timing assertion: the 3 s timeout bounds it; pytest-timeout catches a hang)
