# Third-party libraries (Debian 12 packages; scripts/setup.sh installs them).

find_package(HDF5 REQUIRED COMPONENTS C CXX)
find_package(Boost 1.71 REQUIRED COMPONENTS program_options)
find_package(glog REQUIRED)
find_package(nlohmann_json 3.9 REQUIRED)
find_package(Threads REQUIRED)

# HDF5's FindHDF5 gives variables, not targets: wrap them once.
add_library(cmaf_hdf5 INTERFACE)
target_include_directories(cmaf_hdf5 SYSTEM INTERFACE ${HDF5_INCLUDE_DIRS})
target_compile_definitions(cmaf_hdf5 INTERFACE ${HDF5_DEFINITIONS})
target_link_libraries(cmaf_hdf5 INTERFACE ${HDF5_CXX_LIBRARIES} ${HDF5_LIBRARIES})

if(CMAF_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()

# nifticlib: Debian's NIFTIConfig.cmake points at /usr/lib/libznz.so.3.0.0, which the packages
# install under the multiarch folder, so find_package(NIFTI) fails. Find the files directly.
find_path(CMAF_NIFTI_INCLUDE_DIR nifti2_io.h PATH_SUFFIXES nifti REQUIRED)
find_library(CMAF_NIFTI2_LIBRARY nifti2 REQUIRED)
find_library(CMAF_ZNZ_LIBRARY znz REQUIRED)
find_package(ZLIB REQUIRED)
add_library(cmaf_nifti INTERFACE)
target_include_directories(cmaf_nifti SYSTEM INTERFACE ${CMAF_NIFTI_INCLUDE_DIR})
target_link_libraries(cmaf_nifti INTERFACE ${CMAF_NIFTI2_LIBRARY} ${CMAF_ZNZ_LIBRARY} ZLIB::ZLIB m)
