"""The artifact store: typed records (schema.py, atlas.py, caricature.py, circuits.py, concepts.py, inbrowser.py, sae.py) at the paths store.py
owns, written atomically (files.py)."""
from microscope.store.atlas import AtlasCells, AtlasIcons, AtlasLayout, AtlasResult, AtlasStage, AtlasVectors
from microscope.store.caricature import ActiveUnit, CaricaturePhoto, CaricatureResult
from microscope.store.circuits import CircuitArrays, CircuitRefusal, CircuitResult
from microscope.store.concepts import ConceptInfo, ConceptScore, LayerConcepts, UnitConcepts, UnitSimilarity
from microscope.store.files import (FileStamp, atomic_save_npz, atomic_write_bytes, atomic_write_json,
                                    atomic_write_text, load_npz, usable_folder)
from microscope.store.inbrowser import ExportedModel, ExportedOutput, InputPreparation
from microscope.store.sae import SaeResult, SaeVectors, SaeWeights, VectorShard
from microscope.store.schema import (DatasetIndex, DatasetRef, ExamplesResult, ExamplesSummary, LayerInfo, ModelRecord,
                                     PassShard, PatchIndex, PatchSettings, RenderConfig, RenderImage, RenderRecord,
                                     ThumbSettings, ThumbStamps, ViewSettings)
from microscope.store.store import PATCHES, Store
from microscope.store.typed import RecordError

__all__ = ["AtlasCells", "AtlasIcons", "AtlasLayout", "AtlasResult", "AtlasStage", "AtlasVectors", "ActiveUnit", "CaricaturePhoto",
           "CaricatureResult", "CircuitArrays",
           "CircuitRefusal", "CircuitResult", "ConceptInfo", "ConceptScore", "LayerConcepts", "UnitConcepts", "UnitSimilarity", "DatasetIndex", "DatasetRef", "ExamplesResult", "ExamplesSummary", "ExportedModel",
           "ExportedOutput", "InputPreparation",
           "FileStamp", "LayerInfo", "ModelRecord", "PATCHES", "PassShard", "PatchIndex", "PatchSettings",
           "RecordError", "RenderConfig", "RenderImage", "RenderRecord", "SaeResult", "SaeVectors", "SaeWeights",
           "Store", "ThumbSettings", "ThumbStamps", "VectorShard", "ViewSettings", "atomic_save_npz",
           "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "load_npz", "usable_folder"]
