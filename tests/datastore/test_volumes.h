// Small volumes and source folders made on the fly for datastore tests (no real data needed).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "datastore/volume.h"

namespace cmaf::test {

// A D x H x W geometry with spacing (3, 0.8, 0.8) and a non-trivial affine (origin shifted).
datastore::VolumeGeometry small_geometry(int64_t d, int64_t h, int64_t w);

// HU-like ramp with values in [-300, 400] (so CT windowing clips both ends).
std::vector<int16_t> ct_image(const datastore::VolumeGeometry& g);

// Labels 0..classes-1: class c is a box whose size shrinks with c (long tail). Ids as uint8.
std::vector<uint8_t> box_labels(const datastore::VolumeGeometry& g, int classes);

// Writes an nnU-Net v2 raw folder: dataset.json with `classes` labels ("CT"), and `cases`
// cases "case_00".."case_NN" of `slices` slices each (slices + i for case i).
void write_nnunet_folder(const std::string& root, int cases, int classes, int64_t slices = 6,
                         int64_t size = 16);

// TransUNet-style HDF5 volume: datasets image (float32) and, if with_label, label (float32).
void write_transunet_h5(const std::string& path, const std::vector<float>& image,
                        const std::vector<float>& label, const datastore::VolumeGeometry& g);

// Bytes of a file, and writing bytes back (to corrupt or truncate files).
std::string read_bytes(const std::string& path);
void write_bytes(const std::string& path, const std::string& bytes);

}  // namespace cmaf::test
