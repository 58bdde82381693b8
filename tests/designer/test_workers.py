"""Worker threads end without the GUI event loop (a GUI thread blocked in thread.wait())."""

from designer.workers import FunctionWorker, start_worker


def test_thread_quits_while_gui_thread_blocks_in_wait(qapp):
    # No event processing between start and wait: a queued done -> quit would never arrive and
    # wait() would give up after its timeout and return False (the 60 s freeze on opening a
    # broken .onnx file).
    results = []
    worker = FunctionWorker(lambda: results.append(1) or 42)
    thread = start_worker(worker)
    assert thread.wait(20000), "the worker thread did not quit by itself"
    assert thread.isFinished()
    assert results == [1]


def test_thread_quits_after_a_failure(qapp):
    def boom():
        raise ValueError("bad file")

    worker = FunctionWorker(boom)
    texts = []
    worker.failed.connect(texts.append)
    thread = start_worker(worker)
    assert thread.wait(20000)
    assert thread.isFinished()
