// One case of a dataset: `cases/<case_id>.h5`.
//
// Layout (format version 1), compatible with the TransUNet / SSL4MIS volume files:
//   /image  float32  D x H x W  preprocessed intensities
//   /label  uint8    D x H x W  class ids (present when the case has a label)
//   chunks of one slice (1 x H x W), shuffle + gzip level 1: a random slice read is ~2 ms.
// Root attributes: format_version, case_id, site, spacing (z, y, x mm), affine/qform/sform
// (4x4, voxel (i=x, j=y, k=z) to world, as in the source NIfTI) with qform_code/sform_code,
// source_image, source_label, preprocessing (JSON), label_role ("supervision" or
// "evaluation_only").
//
// Writes are atomic (common/atomic_file.h): a case file exists complete or not at all.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "datastore/volume.h"

namespace H5 {
class H5File;
}

namespace cmaf::datastore {

inline constexpr int64_t kCaseFormatVersion = 1;
inline constexpr const char* kImageDataset = "image";
inline constexpr const char* kLabelDataset = "label";

// What a stored label may be used for. An unlabeled training case keeps its label for
// evaluation only; CaseFile refuses to hand it to training.
enum class LabelRole { kNone, kSupervision, kEvaluationOnly };
enum class LabelUse { kTraining, kEvaluation };

std::string to_string(LabelRole role);
LabelRole label_role_from_string(const std::string& text, const std::string& path);

struct CaseMetadata {
  std::string case_id;
  std::string site;
  VolumeGeometry geometry;
  std::string source_image;
  std::string source_label;
  std::string preprocessing;  // JSON text
  LabelRole label_role = LabelRole::kNone;
};

// `label` is empty when metadata.label_role == kNone; otherwise it has voxel_count() ids.
void write_case_file(const std::string& path, const CaseMetadata& metadata,
                     const std::vector<float>& image, const std::vector<uint8_t>& label);

// Reader. Opening validates the layout (datasets, shapes, types, attributes). Not shareable
// across threads or forks: each reader thread opens its own CaseFile.
class CaseFile {
 public:
  explicit CaseFile(std::string path);
  ~CaseFile();
  CaseFile(CaseFile&&) noexcept;
  CaseFile& operator=(CaseFile&&) noexcept;

  const std::string& path() const { return path_; }
  const CaseMetadata& metadata() const { return metadata_; }
  int64_t slices() const { return metadata_.geometry.shape[0]; }
  bool has_label() const { return metadata_.label_role != LabelRole::kNone; }

  // `out` holds H * W elements.
  void read_image_slice(int64_t z, float* out) const;
  void read_label_slice(int64_t z, LabelUse use, uint8_t* out) const;
  std::vector<float> read_image() const;
  std::vector<uint8_t> read_label(LabelUse use) const;

 private:
  void check_label_use(LabelUse use) const;
  void check_slice(int64_t z) const;

  std::string path_;
  std::unique_ptr<H5::H5File> file_;
  CaseMetadata metadata_;
};

}  // namespace cmaf::datastore
