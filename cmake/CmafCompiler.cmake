# Compiler settings shared by every target: warnings, short __FILE__ paths, ccache, sanitizers.

find_program(CMAF_CCACHE ccache)
if(CMAF_CCACHE)
  # PCH-friendly ccache: without this sloppiness every TU that uses the PCH misses the cache.
  set(CMAF_CCACHE_LAUNCHER
      ${CMAKE_COMMAND} -E env CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
      ${CMAF_CCACHE})
  set(CMAKE_C_COMPILER_LAUNCHER ${CMAF_CCACHE_LAUNCHER})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CMAF_CCACHE_LAUNCHER})
endif()

add_compile_options(-Wall -Wextra
  # Error messages print `datastore/case_file.cpp:88`, not the builder's absolute path.
  -fmacro-prefix-map=${CMAKE_SOURCE_DIR}/=)

if(CMAF_SANITIZE)
  add_compile_options(-fsanitize=${CMAF_SANITIZE} -fno-omit-frame-pointer)
  add_link_options(-fsanitize=${CMAF_SANITIZE})
endif()

# Every project library: one folder, one target, includes relative to the project root
# (`#include "datastore/case_file.h"`) plus the generated `cmaf/config.h`.
function(cmaf_add_library name)
  add_library(${name} ${ARGN})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR}/generated)
endfunction()
