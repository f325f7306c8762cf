// Shared main of the test executables: glog to stderr, then GoogleTest.
#include <glog/logging.h>
#include <gtest/gtest.h>

int main(int argc, char** argv) {
  FLAGS_logtostderr = true;
  FLAGS_minloglevel = 1;  // library progress lines would drown the test output
  google::InitGoogleLogging(argv[0]);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
