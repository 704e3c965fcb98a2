# citygate_plugin(NAME [BUILTIN]) — used by plugins/<name>/CMakeLists.txt.
#
# Builds plugins/<name>/<name>.c as the MODULE build/plugins/<name>.so (what `citygate`
# dlopens from a plugins directory), and with BUILTIN also compiles the same source into
# citygate_core with CG_PLUGIN_BUILTIN, so the entry is named
# citygate_plugin_entry_<name> and listed in gateway/plugin.c's built-in table
# (CITYGATE_BUILTIN_<NAME>). test_<name>.c, when present, becomes the cmocka test
# unit.plugin.<name> (label unit), run against the built-in copy with the vectors/.
include_guard(GLOBAL)

if(CITYGATE_TESTS AND BUILD_TESTING)
  pkg_check_modules(CG_PLUGIN_CMOCKA REQUIRED IMPORTED_TARGET GLOBAL cmocka)
endif()

function(citygate_plugin name)
  cmake_parse_arguments(P "BUILTIN" "" "" ${ARGN})
  string(TOUPPER ${name} uname)
  set(src ${CMAKE_CURRENT_SOURCE_DIR}/${name}.c)

  add_library(plugin_${name} MODULE ${src})
  set_target_properties(plugin_${name} PROPERTIES
    PREFIX "" OUTPUT_NAME ${name}
    LIBRARY_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/plugins
    C_VISIBILITY_PRESET hidden)
  # Only the public header: a plugin never sees the core's internals. plugins/common
  # holds the header-only helpers the in-tree plugins share (cg_util.h); the template
  # does not use it, so it keeps building from the installed header alone.
  target_include_directories(plugin_${name} PRIVATE ${PROJECT_SOURCE_DIR}/gateway/include
                             ${PROJECT_SOURCE_DIR}/plugins/common)
  target_link_libraries(plugin_${name} PRIVATE m)
  target_link_options(plugin_${name} PRIVATE -Wl,--no-undefined)

  if(P_BUILTIN)
    target_sources(citygate_core PRIVATE ${src})
    set_source_files_properties(${src} TARGET_DIRECTORY citygate_core
      PROPERTIES COMPILE_DEFINITIONS CG_PLUGIN_BUILTIN
                 INCLUDE_DIRECTORIES ${PROJECT_SOURCE_DIR}/plugins/common)
    target_compile_definitions(citygate_core PRIVATE CITYGATE_BUILTIN_${uname})
  endif()

  if(CITYGATE_TESTS AND BUILD_TESTING AND EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/test_${name}.c)
    add_executable(test_${name} ${CMAKE_CURRENT_SOURCE_DIR}/test_${name}.c
                   ${PROJECT_SOURCE_DIR}/plugins/testlib/vectors.c)
    target_include_directories(test_${name} PRIVATE ${PROJECT_SOURCE_DIR}/plugins/testlib
                               ${PROJECT_SOURCE_DIR}/plugins/common)
    target_compile_definitions(test_${name} PRIVATE
      VECTORS_DIR="${CMAKE_CURRENT_SOURCE_DIR}/vectors")
    target_link_libraries(test_${name} PRIVATE citygate_core PkgConfig::CG_PLUGIN_CMOCKA)
    add_test(NAME unit.plugin.${name} COMMAND test_${name})
    set_tests_properties(unit.plugin.${name} PROPERTIES LABELS unit TIMEOUT 60)
  endif()
endfunction()
