"""Data: named datasets from local files, the user's own data as a DataBundle, the synthetic shapes set."""

from .datasets import ArrayDataset, DataBundle, DataConfig, read_idx
from .sources import SampleDataset, data_identity, from_factory, load_dataset, to_bundle

__all__ = ["DataConfig", "DataBundle", "ArrayDataset", "load_dataset", "read_idx", "to_bundle", "SampleDataset",
           "data_identity", "from_factory"]
