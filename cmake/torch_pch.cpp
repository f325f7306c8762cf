// Translation unit that owns the shared LibTorch precompiled header (see CmafTorch.cmake).
// It defines nothing; the PCH is injected by CMake.
