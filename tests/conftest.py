import warnings

import pytest

warnings.filterwarnings("ignore")


@pytest.fixture
def cli(capsys):
    """Run the gatec CLI in-process; returns (exit status, stdout, stderr)."""
    from gatec.cli import main

    def run(*args):
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err
    return run
