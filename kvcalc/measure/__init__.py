"""Verify kvcalc's formula on a real device: lay out the tensors each engine allocates,
allocate and write them, and compare the device's own accounting with the prediction.

Only ``device`` and ``transformers_source`` import torch/transformers, and only inside
functions; ``layout`` and ``allocator`` are pure Python.
"""
