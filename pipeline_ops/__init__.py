"""Operations specific to the Odins Ravne pipeline: run it (locally or in a cloud env), check its
health, resume it after a budget shutdown, build its stage images, and the stand-ins the emulator
needs for it (small ONNX models, a loopback weather API, a sample manifest).

Everything generic (emulator, deploy, plan review, drift, preflight) lives in ``local/`` and
``tools/`` and knows nothing of stages or shards.
"""
