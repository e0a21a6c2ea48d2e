"""PyInstaller runtime hook: make the bundled CUDA libraries findable (Windows CUDA variant).

The CUDA variant ships cuBLAS, cuDNN and the CUDA runtime once, in `_internal/cuda/`,
for both CTranslate2 and the CUDA build of llama.cpp. Windows finds a DLL's own
dependencies only in the folders on its search list, so every process (the app and
each runner) adds that folder before any engine loads.
"""

import os
import sys

_cuda = os.path.join(getattr(sys, "_MEIPASS", ""), "cuda")
if sys.platform == "win32" and os.path.isdir(_cuda):
    os.add_dll_directory(_cuda)  # LoadLibraryEx with the default search dirs (ctypes, extension modules)
    os.environ["PATH"] = _cuda + os.pathsep + os.environ.get("PATH", "")  # plain LoadLibrary (delay-loaded DLLs)
