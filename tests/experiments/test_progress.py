import io

from sparsetorch.experiments.progress import progress_bar, progress_enabled


def test_progress_is_quiet_without_a_terminal_or_in_ci(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a TTY
    monkeypatch.delenv("CI", raising=False)
    assert progress_enabled() is False
    assert progress_enabled(True) is True

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stderr", Terminal())
    assert progress_enabled() is True
    monkeypatch.setenv("CI", "true")
    assert progress_enabled() is False
    assert progress_enabled(False) is False


def test_disabled_bar_writes_nothing(capsys):
    bar = progress_bar(10, 0, "train", enabled=False)
    bar.update(5)
    bar.close()
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""
