"""`model.progress`: loops report what they have done to the reporter installed, and to
nobody by default."""

from hatinspect.model import progress


class Recorder:
    """A reporter that writes down every call."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def start(self, description, total, unit):
        self.calls.append(("start", description, total, unit))
        return len(self.calls)

    def advance(self, handle, amount):
        self.calls.append(("advance", handle, amount))

    def finish(self, handle):
        self.calls.append(("finish", handle))


def test_nothing_is_reported_by_default():
    assert progress.reporter.get() is progress.SILENT
    assert list(progress.track(iter("abc"), "letters")) == ["a", "b", "c"]


def test_counted_items_are_reported_one_by_one():
    recorder = Recorder()
    with progress.reporting(recorder):
        seen = []
        for item in progress.track(["x", "y"], "layers of a file", unit="layers"):
            seen.append((item, len(recorder.calls)))  # advanced after the body, not before
    assert seen == [("x", 1), ("y", 2)]
    assert recorder.calls == [
        ("start", "layers of a file", 2, "layers"),
        ("advance", 1, 1),
        ("advance", 1, 1),
        ("finish", 1),
    ]
    assert progress.reporter.get() is progress.SILENT  # the block's reporter is gone


def test_sizes_make_the_total_and_each_step():
    recorder = Recorder()
    sizes = {"a": 100, "b": 28}
    with progress.reporting(recorder):
        assert list(progress.track(iter(sizes), "audit", unit="bytes", size=sizes.get)) == [
            "a",
            "b",
        ]
    assert recorder.calls[0] == ("start", "audit", 128, "bytes")
    assert [c[2] for c in recorder.calls if c[0] == "advance"] == [100, 28]


def test_a_loop_left_early_still_finishes_its_bar():
    recorder = Recorder()
    with progress.reporting(recorder):
        try:
            for _ in progress.track(range(5), "work", unit="files"):
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            pass
    assert recorder.calls[-1] == ("finish", 1)
    assert recorder.calls[0] == ("start", "work", 5, "files")


def test_an_audit_reports_the_bytes_of_both_files_weights():
    from pathlib import Path

    from safetensors.numpy import load_file

    from hatinspect.analysis.audit import audit
    from hatinspect.native.reader import open_native

    run = Path(__file__).resolve().parents[2] / "examples" / "hat-toy"
    before, after = (open_native(run / f"after-task-{t}.safetensors") for t in (2, 5))
    expected = 0
    for checkpoint in (before, after):
        tensors = load_file(checkpoint.path)
        for info in checkpoint.layers:
            expected += sum(tensors[k].nbytes for k in (info.weight_key, info.bias_key) if k)
    recorder = Recorder()
    with progress.reporting(recorder):
        audit(before, after)
    starts = [c for c in recorder.calls if c[0] == "start"]
    assert starts == [("start", "audit", expected, "bytes")]
    assert sum(c[2] for c in recorder.calls if c[0] == "advance") == expected


def test_reading_a_file_reports_its_bytes(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(256)) * 1000)
    with progress.reading(path, "reading") as f:  # nobody listening: a plain file
        assert f.read() == path.read_bytes()
    recorder = Recorder()
    with progress.reporting(recorder), progress.reading(path, "loading data.bin") as f:
        while f.read(4096):
            pass
    assert recorder.calls[0] == ("start", "loading data.bin", 256_000, "bytes")
    assert sum(c[2] for c in recorder.calls if c[0] == "advance") == 256_000
    assert recorder.calls[-1][0] == "finish"


def test_a_file_whose_writer_cannot_count_is_reported_done_with_its_size(tmp_path):
    path = tmp_path / "written.bin"
    recorder = Recorder()
    with progress.reporting(recorder), progress.writing(path, "writing written.bin"):
        path.write_bytes(b"x" * 3000)
    assert recorder.calls == [
        ("start", "writing written.bin", None, "bytes"),  # its length unknown till done
        ("advance", 1, 3000),
        ("finish", 1),
    ]


def test_a_write_goes_unreported_by_default(tmp_path):
    with progress.writing(tmp_path / "never.bin", "writing never.bin"):
        pass  # no file made, none looked for
