// make_nnunet_folder DIR CASES CLASSES: a small nnU-Net raw folder (test_volumes.h) for tests
// that drive the cmaformer executable or Slurm jobs and need real NIfTI inputs.
#include <cstdlib>
#include <iostream>

#include "tests/datastore/test_volumes.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: make_nnunet_folder DIR CASES CLASSES\n";
    return 2;
  }
  cmaf::test::write_nnunet_folder(argv[1], std::atoi(argv[2]), std::atoi(argv[3]));
  return 0;
}
