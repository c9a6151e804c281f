# Finds the Debian-packaged dependencies (DESIGN.md §2). Each failure names the package to
# install (scripts/setup.sh installs them all), or the prefix made by
# third_party/unpack_debs.sh for machines without a package manager (pass
# -DTAPEGRAD_DEPS_PREFIX=<prefix>).
set(TAPEGRAD_DEPS_PREFIX "" CACHE PATH "Prefix made by third_party/unpack_debs.sh (optional)")
if(TAPEGRAD_DEPS_PREFIX)
  list(PREPEND CMAKE_PREFIX_PATH
    "${TAPEGRAD_DEPS_PREFIX}/usr"
    "${TAPEGRAD_DEPS_PREFIX}/usr/share/eigen3/cmake"
    "${TAPEGRAD_DEPS_PREFIX}/usr/lib/cmake"
    "${TAPEGRAD_DEPS_PREFIX}/usr/share/cmake")
endif()

macro(tg_require_package name debian_package)
  find_package(${name} ${ARGN} QUIET)
  if(NOT ${name}_FOUND)
    message(FATAL_ERROR
      "tapegrad: dependency '${name}' not found. Install the Debian package '${debian_package}' "
      "(scripts/setup.sh installs every dependency), or unpack it with "
      "third_party/unpack_debs.sh and pass -DTAPEGRAD_DEPS_PREFIX=<prefix>.")
  endif()
endmacro()

tg_require_package(Eigen3 libeigen3-dev 3.3 NO_MODULE)
tg_require_package(nlohmann_json nlohmann-json3-dev)
tg_require_package(ZLIB zlib1g-dev)
if(TAPEGRAD_BUILD_TESTS)
  tg_require_package(doctest doctest-dev)
endif()
# CLI11 ships a config file in Debian; fall back to the bare header for unpacked prefixes.
find_package(CLI11 QUIET CONFIG)
if(NOT CLI11_FOUND)
  find_path(TG_CLI11_INCLUDE CLI/CLI.hpp)
  if(NOT TG_CLI11_INCLUDE)
    message(FATAL_ERROR "tapegrad: dependency 'CLI11' not found. Install the Debian package "
      "'libcli11-dev' (scripts/setup.sh installs every dependency).")
  endif()
  add_library(CLI11::CLI11 INTERFACE IMPORTED)
  target_include_directories(CLI11::CLI11 SYSTEM INTERFACE "${TG_CLI11_INCLUDE}")
endif()
