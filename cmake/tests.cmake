# Test registration. Every suite runs through ctest; labels pick subsets:
#   unit  cmocka tests of core/        spec  busted specs (real build/core.so)
#   lint  luacheck                     e2e   the real binary against fake peers
#   fake  the fake peers' own tests
# The sanitizer build runs the "unit" and "spec" labels.

find_program(LUA_INTERP NAMES lua5.4 REQUIRED)
find_program(BUSTED busted REQUIRED)
find_program(LUACHECK luacheck)
set(PYTHON3 /usr/bin/python3)

# Lua search paths for specs and the bot: the repo's lua/, then the built module.
set(CC_LUA_PATH "${CMAKE_SOURCE_DIR}/lua/?.lua;${CMAKE_SOURCE_DIR}/lua/?/init.lua;${CMAKE_SOURCE_DIR}/spec/?.lua;;")
set(CC_LUA_CPATH "${CMAKE_BINARY_DIR}/?.so;;")

# ";" separates ctest ENVIRONMENT entries, so the search paths carry it escaped.
string(REPLACE ";" "\\;" CC_LUA_PATH_ESC "${CC_LUA_PATH}")
string(REPLACE ";" "\\;" CC_LUA_CPATH_ESC "${CC_LUA_CPATH}")
set(SPEC_ENV "LUA_PATH=${CC_LUA_PATH_ESC}" "LUA_CPATH=${CC_LUA_CPATH_ESC}")
if(SANITIZE)
  # lua5.4 itself is not instrumented: preload the runtimes so core.so can load.
  execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=libasan.so
                  OUTPUT_VARIABLE ASAN_RT OUTPUT_STRIP_TRAILING_WHITESPACE)
  execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=libubsan.so
                  OUTPUT_VARIABLE UBSAN_RT OUTPUT_STRIP_TRAILING_WHITESPACE)
  list(APPEND SPEC_ENV "LD_PRELOAD=${ASAN_RT}:${UBSAN_RT}"
       "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1"
       "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
endif()

# cmocka: one executable per tests/unit/test_*.c, linked with the whole core.
file(GLOB UNIT_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/unit/test_*.c)
foreach(src ${UNIT_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_link_libraries(${name} PRIVATE cc_bindings cc_core PkgConfig::CMOCKA)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  add_test(NAME unit/${name} COMMAND ${name} WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(unit/${name} PROPERTIES LABELS unit TIMEOUT 300
    ENVIRONMENT "CC_TEST_BIN_DIR=${CMAKE_BINARY_DIR}/tests")
endforeach()

# busted: one ctest per spec file, run by lua5.4 against build/core.so.
file(GLOB SPECS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/spec/*_spec.lua)
foreach(spec ${SPECS})
  get_filename_component(name ${spec} NAME_WE)
  add_test(NAME spec/${name}
           COMMAND ${LUA_INTERP} ${BUSTED} --lua=${LUA_INTERP} -o TAP ${spec}
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(spec/${name} PROPERTIES LABELS spec TIMEOUT 600
    ENVIRONMENT "${SPEC_ENV}")
endforeach()

if(LUACHECK AND NOT SANITIZE)
  set(LINT_PATHS lua spec bot.lua config.lua)
  foreach(dir bench tests)
    if(EXISTS ${CMAKE_SOURCE_DIR}/${dir})
      list(APPEND LINT_PATHS ${dir})
    endif()
  endforeach()
  add_test(NAME lint/luacheck
           COMMAND ${LUACHECK} --codes --no-color ${LINT_PATHS}
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(lint/luacheck PROPERTIES LABELS lint)
endif()

# Python suites: end-to-end tests of the real binary, and the fakes' own tests.
if(NOT SANITIZE)
  file(GLOB_RECURSE PY_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/*/test_*.py)
  foreach(py ${PY_TESTS})
    get_filename_component(name ${py} NAME_WE)
    get_filename_component(dir ${py} DIRECTORY)
    get_filename_component(suite ${dir} NAME)
    if(suite STREQUAL "e2e")
      set(label e2e)
    else()
      set(label fake)
    endif()
    add_test(NAME ${suite}/${name}
             COMMAND ${PYTHON3} -m pytest -q -p no:cacheprovider ${py}
             WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
    set_tests_properties(${suite}/${name} PROPERTIES LABELS ${label} TIMEOUT 900
      ENVIRONMENT "CC_BINARY=${CMAKE_BINARY_DIR}/claude-coordinator;CC_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1;LUA_PATH=${CC_LUA_PATH_ESC};LUA_CPATH=${CC_LUA_CPATH_ESC}")
  endforeach()
endif()
