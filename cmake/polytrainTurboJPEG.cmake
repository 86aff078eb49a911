# Finds TurboJPEG (libjpeg-turbo's fast API; Debian: libturbojpeg0-dev), which has no CMake
# package of its own on Debian 12, as the imported target polytrain::turbojpeg. Used by the
# build and, installed next to polytrainConfig.cmake, by programs linking the static library.
if(NOT TARGET polytrain::turbojpeg)
  find_path(TURBOJPEG_INCLUDE_DIR turbojpeg.h)
  find_library(TURBOJPEG_LIBRARY turbojpeg)
  if(TURBOJPEG_INCLUDE_DIR AND TURBOJPEG_LIBRARY)
    add_library(polytrain::turbojpeg UNKNOWN IMPORTED)
    set_target_properties(polytrain::turbojpeg PROPERTIES
      IMPORTED_LOCATION "${TURBOJPEG_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${TURBOJPEG_INCLUDE_DIR}")
  endif()
endif()
