"""The cost model of each device kind, one module per `kind:` of a hardware profile.

gpu (roofline), mcu (memory and cycle counts), lut (published per-block look-up tables),
measured (block latencies timed on this machine) and learned (gradient-boosted trees). None of
them imports torch; `latency_models.hardware.KINDS` picks one from a profile's `kind`.
"""
