# Install rules, the CMake package (polytrainConfig.cmake), pkg-config's polytrain.pc and the
# Debian packages (cpack -G DEB), included from the top-level CMakeLists.txt. Two components:
#   main - the command line, libpolytrain.so.MAJOR and libpolytrain.a, the public headers,
#          the CMake package, polytrain.pc and the docs: the package "polytrain";
#   cuda - the cuda module (libpolytrain_cuda.so, loaded with dlopen() on first use), in
#          its own package "polytrain-cuda", so that "polytrain" installs without CUDA.
# The kernels travel inside the binaries (OpenCL sources embedded in the library, the CUDA
# fatbin in the module): there are no kernel files to install.
option(PT_INSTALL "Generate install rules and the CPack configuration" ${PT_TOP_LEVEL})
if(NOT PT_INSTALL)
  return()
endif()
include(CMakePackageConfigHelpers)

set(PT_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/polytrain)
# The cuda module lives in LIBDIR/polytrain; backends/cuda/cuda_loader.c looks there
# relative to libpolytrain.so or to the program (bin/../LIBDIR/polytrain).
set(PT_MODULE_DIR ${CMAKE_INSTALL_LIBDIR}/polytrain)

if(TARGET polytrain-cli)
  # $ORIGIN: a prefix install (e.g. ~/.local) finds its own libpolytrain.so first.
  file(RELATIVE_PATH _pt_bin_to_lib /${CMAKE_INSTALL_BINDIR} /${CMAKE_INSTALL_LIBDIR})
  if(NOT CMAKE_INSTALL_PREFIX STREQUAL "/usr") # Debian's packages carry no RPATH
    set_target_properties(polytrain-cli PROPERTIES INSTALL_RPATH "$ORIGIN/${_pt_bin_to_lib}")
  endif()
  install(TARGETS polytrain-cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT main)
endif()
install(TARGETS polytrain_shared EXPORT polytrainTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT main NAMELINK_COMPONENT main
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS polytrain EXPORT polytrainStaticTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT main
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/polytrain ${PROJECT_BINARY_DIR}/include/polytrain
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT main FILES_MATCHING PATTERN "*.h")
if(TARGET polytrain_cuda)
  install(TARGETS polytrain_cuda LIBRARY DESTINATION ${PT_MODULE_DIR} COMPONENT cuda)
endif()
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/LICENSE
  ${PROJECT_SOURCE_DIR}/docs/ARCHITECTURE.md ${PROJECT_SOURCE_DIR}/docs/BENCHMARKS.md
  DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT main)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/docs/images DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT main)
install(FILES ${PROJECT_SOURCE_DIR}/examples/train_tiny_cnn.c DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples
  COMPONENT main)

# ---- the CMake package: polytrain::polytrain (shared, needs nothing else) and, when the
# development packages of what the library links are present, polytrain::polytrain_static.
set(PT_CONFIG_HAVE_MPI ${PT_HAVE_MPI})
set(PT_CONFIG_HAVE_OPENCL OFF)
set(PT_CONFIG_CLBLAST_TARGET OFF)
if("opencl" IN_LIST PT_BACKENDS)
  set(PT_CONFIG_HAVE_OPENCL ON)
  if(TARGET clblast)
    set(PT_CONFIG_CLBLAST_TARGET ON)
  endif()
endif()
install(EXPORT polytrainTargets NAMESPACE polytrain:: DESTINATION ${PT_CMAKE_DIR} COMPONENT main)
install(EXPORT polytrainStaticTargets NAMESPACE polytrain:: DESTINATION ${PT_CMAKE_DIR} COMPONENT main)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/polytrainConfig.cmake.in
  ${PROJECT_BINARY_DIR}/polytrainConfig.cmake INSTALL_DESTINATION ${PT_CMAKE_DIR})
# 0.x: a minor release may change the ABI, so only the same major.minor is compatible.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(_pt_compat SameMinorVersion)
else()
  set(_pt_compat SameMajorVersion)
endif()
write_basic_package_version_file(${PROJECT_BINARY_DIR}/polytrainConfigVersion.cmake
  COMPATIBILITY ${_pt_compat})
install(FILES ${PROJECT_BINARY_DIR}/polytrainConfig.cmake ${PROJECT_BINARY_DIR}/polytrainConfigVersion.cmake
  ${PROJECT_SOURCE_DIR}/cmake/polytrainTurboJPEG.cmake DESTINATION ${PT_CMAKE_DIR} COMPONENT main)

# ---- pkg-config: "pkg-config --cflags --libs polytrain" links the shared library, "--static"
# the static one. The prefix is the one installed to (cmake --install --prefix, DESTDIR-less),
# so the file is written at install time.
# Libs.private as plain flags, not Requires.private: pkg-config also reads the Cflags of
# Requires.private, so a program using the shared library would need every -dev package.
set(PT_PC_LIBS_PRIVATE "-lturbojpeg -lpng -ljpeg -lz -lgomp -lpthread -ldl -lm")
if(PT_HAVE_MPI)
  foreach(_l ${MPI_C_LIBRARIES})
    string(APPEND PT_PC_LIBS_PRIVATE " ${_l}")
  endforeach()
endif()
if(PT_CONFIG_HAVE_OPENCL)
  string(APPEND PT_PC_LIBS_PRIVATE " -lclblast -lOpenCL")
endif()
configure_file(${PROJECT_SOURCE_DIR}/cmake/polytrain.pc.in ${PROJECT_BINARY_DIR}/polytrain.pc.in @ONLY)
install(CODE "
  file(READ \"${PROJECT_BINARY_DIR}/polytrain.pc.in\" _pc)
  string(REPLACE \"%PREFIX%\" \"\${CMAKE_INSTALL_PREFIX}\" _pc \"\${_pc}\")
  file(WRITE \"${PROJECT_BINARY_DIR}/polytrain.pc\" \"\${_pc}\")" COMPONENT main)
install(FILES ${PROJECT_BINARY_DIR}/polytrain.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT main)

# ---- Debian packages: cpack -G DEB in the build directory (ci/package-deb.sh makes the
# portable ones: -DPT_NATIVE=OFF, prefix /usr).
# The Maintainer field: the packager's DEBFULLNAME and DEBEMAIL, as Debian's tools take it.
set(_pt_maint "polytrain developers")
if(DEFINED ENV{DEBFULLNAME} AND DEFINED ENV{DEBEMAIL})
  set(_pt_maint "$ENV{DEBFULLNAME} <$ENV{DEBEMAIL}>")
endif()
set(PT_PACKAGE_MAINTAINER "${_pt_maint}" CACHE STRING "Maintainer field of the Debian packages")
set(CPACK_PACKAGE_NAME polytrain)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "polytrain")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Deep-learning training in C on CUDA, OpenCL and CPU devices")
set(CPACK_RESOURCE_FILE_LICENSE ${PROJECT_SOURCE_DIR}/LICENSE)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_GENERATOR DEB)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL main)
if(TARGET polytrain_cuda)
  list(APPEND CPACK_COMPONENTS_ALL cuda)
endif()
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${PT_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_MAIN_PACKAGE_NAME polytrain)
set(CPACK_DEBIAN_MAIN_PACKAGE_SECTION science)
set(CPACK_COMPONENT_MAIN_DESCRIPTION
  "Deep-learning training in C on CUDA, OpenCL and CPU devices
 The polytrain command line (train, eval, predict, report, export, bench, experiment),
 the C library (libpolytrain.so and libpolytrain.a) with its headers, CMake package and
 pkg-config file. The cpu backend (OpenMP + OpenBLAS) and, where an OpenCL driver is
 installed, the opencl backend work out of the box; the cuda backend is in polytrain-cuda.")
# What the binaries link comes from dpkg-shlibdeps; OpenBLAS is loaded with dlopen() at run
# time, so it is declared here.
set(CPACK_DEBIAN_MAIN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_MAIN_PACKAGE_DEPENDS "libopenblas0-openmp | libopenblas0-pthread | libopenblas0")
set(CPACK_DEBIAN_MAIN_PACKAGE_SUGGESTS "dataset-fashion-mnist, pocl-opencl-icd, gnuplot-nox, polytrain-cuda")
set(CPACK_DEBIAN_CUDA_PACKAGE_NAME polytrain-cuda)
set(CPACK_DEBIAN_CUDA_PACKAGE_SECTION science)
# The module's libraries (CUDA 13 runtime, cuBLAS, cuDNN 9) come from NVIDIA's installers,
# not from Debian packages dpkg-shlibdeps knows; NCCL is opened only when needed.
set(CPACK_DEBIAN_CUDA_PACKAGE_SHLIBDEPS OFF)
set(CPACK_DEBIAN_CUDA_PACKAGE_DEPENDS "polytrain (= ${PROJECT_VERSION})")
set(CPACK_COMPONENT_CUDA_DESCRIPTION
  "polytrain's cuda backend (CUDA kernels, cuDNN, cuBLAS, NCCL)
 The module polytrain loads on first use of a cuda device. It needs the NVIDIA driver, the
 CUDA 13 runtime with cuBLAS, cuDNN 9 and, for several GPUs, NCCL 2 on the library path.")
set(CPACK_PROJECT_CONFIG_FILE ${PROJECT_BINARY_DIR}/polytrainCPackOptions.cmake)
file(WRITE ${PROJECT_BINARY_DIR}/polytrainCPackOptions.cmake
  "# Written by cmake/polytrainInstall.cmake: checks made when cpack runs.\n"
  "if(\"${PT_NATIVE}\" AND NOT \"${PT_SANITIZE}\")\n"
  "  message(WARNING \"polytrain: this build uses -march=native, so its packages run only on CPUs like this one; \"\n"
  "          \"configure with -DPT_NATIVE=OFF (ci/package-deb.sh) for packages to distribute\")\n"
  "endif()\n")
include(CPack)
