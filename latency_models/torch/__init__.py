"""The only modules of latency_models that import torch: `tracing` (a torch module to a
NetworkSpec, `latency_models.trace`) and `measure` (timing on this machine). This package file
itself imports nothing, so the cost models keep running where torch is absent.
"""
