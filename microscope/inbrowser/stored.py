"""Reading a model exported for the browser back (no torch): what the "Try an image" page is built from."""
from __future__ import annotations

from pathlib import Path

from microscope.store import ExportedModel, Store


def read_exported(store: Store, model: str) -> tuple[ExportedModel, Path] | None:
    """(the record, model.onnx) of `model`, or None when there is none or it cannot be trusted: the record
    damaged or of another model, or model.onnx no longer what the record stamped (said once; the next build
    exports it again)."""
    path = store.inbrowser_record_file(model)
    record = store.read(path, ExportedModel)
    if record is None:
        return None
    onnx_file = store.inbrowser_onnx_file(model)
    stamp = record.files.get(Store.file_key(onnx_file, path.parent))
    if record.model != model or stamp is None:
        return store.damaged(path, "not a record of this model's model.onnx")
    problem = stamp.problem(onnx_file)
    if problem:
        return store.damaged(onnx_file, problem)
    return record, onnx_file
