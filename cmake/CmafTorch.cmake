# LibTorch and the one precompiled header every LibTorch-using target shares.
#
# A TU that includes <torch/torch.h> costs ~18 s and ~1.2 GB to compile here; with the shared
# PCH ~8 s. Targets opt in with cmaf_use_torch(<target>): they link LibTorch and reuse the PCH
# built once by cmaf_torch_pch (target_precompile_headers REUSE_FROM needs identical flags,
# which holds because every project target gets its flags from the same place).

find_package(Torch REQUIRED)

add_library(cmaf_torch_pch STATIC ${PROJECT_SOURCE_DIR}/cmake/torch_pch.cpp)
target_link_libraries(cmaf_torch_pch PUBLIC ${TORCH_LIBRARIES})
target_compile_options(cmaf_torch_pch PUBLIC -Winvalid-pch)
target_precompile_headers(cmaf_torch_pch PRIVATE <torch/torch.h>)

function(cmaf_use_torch target)
  get_target_property(type ${target} TYPE)
  if(type STREQUAL "EXECUTABLE")
    # Executables would get -fPIE, libraries (and so the PCH) -fPIC: GCC then refuses the PCH.
    # -fPIC objects link into a PIE executable just as well.
    set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE OFF)
    target_compile_options(${target} PRIVATE -fPIC)
  endif()
  target_link_libraries(${target} PUBLIC cmaf_torch_pch)
  target_precompile_headers(${target} REUSE_FROM cmaf_torch_pch)
endfunction()
