// The `cmaformer` executable: everything lives in the launch library (launch/commands.h).
#include "launch/commands.h"

int main(int argc, char** argv) { return cmaf::launch::main_entry(argc, argv); }
