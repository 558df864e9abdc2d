"""Rate–distortion and speed benchmarks for gscodec and classical codecs.

Modules: ``codecs`` (the codecs under test), ``datasets`` (image folders),
``metrics`` (bpp, PSNR-RGB, MS-SSIM-RGB), ``schema`` (CompressAI-style result
JSON), ``cache`` (per-image result cache), ``progress`` (a stderr progress bar),
and the command-line tools ``rd``, ``bdrate``, ``plot`` and ``speed``
(run as ``python -m bench.<tool> --help``).
"""
