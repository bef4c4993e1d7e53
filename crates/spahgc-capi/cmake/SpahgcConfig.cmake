# CMake package of libspahgc, installed by scripts/install-capi.sh into PREFIX/lib/cmake/Spahgc:
#   find_package(Spahgc REQUIRED)   # with -DCMAKE_PREFIX_PATH=PREFIX
#   target_link_libraries(app PRIVATE Spahgc::spahgc)
# Relocatable: paths are found from this file's place.
get_filename_component(_spahgc_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
include("${CMAKE_CURRENT_LIST_DIR}/SpahgcConfigVersion.cmake")
set(Spahgc_VERSION "${PACKAGE_VERSION}")
string(REGEX MATCH "^[0-9]+" _spahgc_major "${PACKAGE_VERSION}")
if(NOT TARGET Spahgc::spahgc)
  add_library(Spahgc::spahgc SHARED IMPORTED)
  set_target_properties(Spahgc::spahgc PROPERTIES
    IMPORTED_LOCATION "${_spahgc_prefix}/lib/libspahgc.so.${_spahgc_major}"
    IMPORTED_SONAME "libspahgc.so.${_spahgc_major}"
    INTERFACE_INCLUDE_DIRECTORIES "${_spahgc_prefix}/include")
endif()
set(Spahgc_FOUND TRUE)
