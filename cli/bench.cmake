# cli/bench.cmake: the benchmarks behind `moectl bench` as the static library moe_bench (cli/bench_*.cc).
# Included from cli/CMakeLists.txt. The ceilings call OpenBLAS directly, so it finds cblas.h the way
# kernels/CMakeLists.txt does.
find_package(OpenBLAS CONFIG QUIET)
if(OpenBLAS_FOUND)
  set(MOE_BENCH_BLAS_INCLUDE ${OpenBLAS_INCLUDE_DIRS})
  set(MOE_BENCH_BLAS_LIBS ${OpenBLAS_LIBRARIES})
else()
  find_package(BLAS REQUIRED)
  find_path(MOE_BENCH_BLAS_INCLUDE cblas.h PATH_SUFFIXES openblas REQUIRED)
  set(MOE_BENCH_BLAS_LIBS ${BLAS_LIBRARIES})
endif()
file(GLOB MOE_BENCH_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/bench_*.cc)
add_library(moe_bench STATIC ${MOE_BENCH_SOURCES})
# The engine bench finds the PyTorch peer (tools/, .venv/) under the source tree by default.
target_compile_definitions(moe_bench PRIVATE MOE_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
target_include_directories(moe_bench PUBLIC ${PROJECT_SOURCE_DIR} PRIVATE ${MOE_BENCH_BLAS_INCLUDE})
target_link_libraries(moe_bench PUBLIC moe_placement moe_local_cluster moe_client moe_engine moe_routing moe_model moe_kernels
                                 PRIVATE ${MOE_BENCH_BLAS_LIBS})
