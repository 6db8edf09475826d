/* main() of the ivc-test / ivc-bench binary (see ivc_main.h). */
#include <string.h>

#include "ivc_main.h"

int main(int argc, char** argv) {
  const char* name = argc > 0 ? strrchr(argv[0], '/') : NULL;
  name = name ? name + 1 : argc > 0 ? argv[0] : "";
  if (strcmp(name, "ivc-bench") == 0) return ivc_bench_main(argc, argv);
  return ivc_test_main(argc, argv);
}
