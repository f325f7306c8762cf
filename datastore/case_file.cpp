#include "datastore/case_file.h"

#include <H5Cpp.h>

#include "common/atomic_file.h"
#include "common/error.h"
#include "datastore/h5_util.h"

namespace cmaf::datastore {
namespace {

constexpr int kGzipLevel = 1;  // level 4 compresses CT no better and is slower (PLATFORM.md)

std::vector<double> to_vector(const Matrix4& m) { return {m.begin(), m.end()}; }

Matrix4 to_matrix(const std::vector<double>& v) {
  Matrix4 m{};
  std::copy(v.begin(), v.end(), m.begin());
  return m;
}

H5::DSetCreatPropList slice_chunked(const VolumeGeometry& geometry) {
  H5::DSetCreatPropList properties;
  const hsize_t chunk[3] = {1, static_cast<hsize_t>(geometry.shape[1]),
                            static_cast<hsize_t>(geometry.shape[2])};
  properties.setChunk(3, chunk);
  properties.setShuffle();
  properties.setDeflate(kGzipLevel);
  return properties;
}

void write_attributes(H5::H5File& file, const CaseMetadata& m) {
  h5::write_int(file, "format_version", kCaseFormatVersion);
  h5::write_string(file, "case_id", m.case_id);
  h5::write_string(file, "site", m.site);
  const auto& g = m.geometry;
  h5::write_doubles(file, "spacing", {g.spacing.begin(), g.spacing.end()}, {3});
  h5::write_doubles(file, "affine", to_vector(g.affine), {4, 4});
  h5::write_doubles(file, "qform", to_vector(g.qform), {4, 4});
  h5::write_doubles(file, "sform", to_vector(g.sform), {4, 4});
  h5::write_int(file, "qform_code", g.qform_code);
  h5::write_int(file, "sform_code", g.sform_code);
  h5::write_string(file, "source_image", m.source_image);
  h5::write_string(file, "source_label", m.source_label);
  h5::write_string(file, "preprocessing", m.preprocessing);
  h5::write_string(file, "label_role", to_string(m.label_role));
}

}  // namespace

std::string to_string(LabelRole role) {
  switch (role) {
    case LabelRole::kNone: return "none";
    case LabelRole::kSupervision: return "supervision";
    case LabelRole::kEvaluationOnly: return "evaluation_only";
  }
  return "none";
}

LabelRole label_role_from_string(const std::string& text, const std::string& path) {
  if (text == "none") return LabelRole::kNone;
  if (text == "supervision") return LabelRole::kSupervision;
  if (text == "evaluation_only") return LabelRole::kEvaluationOnly;
  throw InputError(path, "label_role",
                   str("'", text, "', expected one of none, supervision, evaluation_only"));
}

void write_case_file(const std::string& path, const CaseMetadata& metadata,
                     const std::vector<float>& image, const std::vector<uint8_t>& label) {
  const VolumeGeometry& g = metadata.geometry;
  const auto voxels = static_cast<size_t>(g.voxel_count());
  CMAF_CHECK_EQ(image.size(), voxels, "image buffer of case ", metadata.case_id);
  const bool with_label = metadata.label_role != LabelRole::kNone;
  CMAF_CHECK_EQ(label.size(), with_label ? voxels : 0, "label buffer of case ", metadata.case_id);

  AtomicFile file(path);
  try {
    H5::Exception::dontPrint();
    H5::H5File h5(file.temp_path(), H5F_ACC_TRUNC);
    const hsize_t dims[3] = {static_cast<hsize_t>(g.shape[0]), static_cast<hsize_t>(g.shape[1]),
                             static_cast<hsize_t>(g.shape[2])};
    H5::DataSpace space(3, dims);
    const H5::DSetCreatPropList properties = slice_chunked(g);
    h5.createDataSet(kImageDataset, H5::PredType::IEEE_F32LE, space, properties)
        .write(image.data(), H5::PredType::NATIVE_FLOAT);
    if (with_label) {
      h5.createDataSet(kLabelDataset, H5::PredType::STD_U8LE, space, properties)
          .write(label.data(), H5::PredType::NATIVE_UINT8);
    }
    write_attributes(h5, metadata);
    h5.close();
  } catch (const H5::Exception& e) {
    throw IoError(str(path, ": writing case ", metadata.case_id, " failed (", e.getFuncName(),
                      ": ", e.getDetailMsg(), ")"));
  }
  file.commit();
}

CaseFile::CaseFile(std::string path) : path_(std::move(path)) {
  file_ = std::make_unique<H5::H5File>(h5::open_read_only(path_));
  const int64_t version = h5::read_int(*file_, "format_version", path_);
  if (version < 1 || version > kCaseFormatVersion) {
    throw InputError(path_, "attribute 'format_version'",
                     str(version, ", expected 1..", kCaseFormatVersion,
                         " (written by a newer cmaformer?)"));
  }
  CaseMetadata& m = metadata_;
  m.case_id = h5::read_string(*file_, "case_id", path_);
  m.site = h5::read_string(*file_, "site", path_);
  m.source_image = h5::read_string(*file_, "source_image", path_);
  m.source_label = h5::read_string(*file_, "source_label", path_);
  m.preprocessing = h5::read_string(*file_, "preprocessing", path_);
  m.label_role = label_role_from_string(h5::read_string(*file_, "label_role", path_), path_);
  const std::vector<double> spacing = h5::read_doubles(*file_, "spacing", 3, path_);
  std::copy(spacing.begin(), spacing.end(), m.geometry.spacing.begin());
  m.geometry.affine = to_matrix(h5::read_doubles(*file_, "affine", 16, path_));
  m.geometry.qform = to_matrix(h5::read_doubles(*file_, "qform", 16, path_));
  m.geometry.sform = to_matrix(h5::read_doubles(*file_, "sform", 16, path_));
  m.geometry.qform_code = static_cast<int>(h5::read_int(*file_, "qform_code", path_));
  m.geometry.sform_code = static_cast<int>(h5::read_int(*file_, "sform_code", path_));

  if (!file_->nameExists(kImageDataset)) {
    throw InputError(path_, "dataset 'image'", "missing, expected float32 D x H x W");
  }
  const auto image_dims = h5::dims3(file_->openDataSet(kImageDataset), kImageDataset, path_);
  for (int axis = 0; axis < 3; ++axis) m.geometry.shape[axis] = static_cast<int64_t>(image_dims[axis]);
  if (m.geometry.voxel_count() == 0) {
    throw InputError(path_, "dataset 'image'",
                     str("is empty (", m.geometry.shape_string(), "), expected every size >= 1"));
  }
  const bool label_stored = file_->nameExists(kLabelDataset);
  if (label_stored != has_label()) {
    throw InputError(path_, "dataset 'label'",
                     str(label_stored ? "present" : "missing", " but attribute label_role is '",
                         to_string(m.label_role), "'"));
  }
  if (label_stored) {
    const auto label_dims = h5::dims3(file_->openDataSet(kLabelDataset), kLabelDataset, path_);
    if (label_dims != image_dims) {
      throw InputError(path_, "dataset 'label'",
                       str("shape ", label_dims[0], "x", label_dims[1], "x", label_dims[2],
                           " differs from image ", m.geometry.shape_string()));
    }
  }
}

CaseFile::~CaseFile() = default;
CaseFile::CaseFile(CaseFile&&) noexcept = default;
CaseFile& CaseFile::operator=(CaseFile&&) noexcept = default;

void CaseFile::check_slice(int64_t z) const {
  if (z < 0 || z >= slices()) {
    throw InputError(path_, "slice", str(z, " is out of range, expected 0..", slices() - 1));
  }
}

void CaseFile::check_label_use(LabelUse use) const {
  if (!has_label()) {
    throw InputError(path_, "dataset 'label'", str("case ", metadata_.case_id, " has no label"));
  }
  if (use == LabelUse::kTraining && metadata_.label_role != LabelRole::kSupervision) {
    throw InputError(path_, "dataset 'label'",
                     str("case ", metadata_.case_id,
                         " is unlabeled for training: its label is kept for evaluation only"));
  }
}

namespace {
template <typename T>
void read_slab(const H5::H5File& file, const std::string& path, const char* name,
               const VolumeGeometry& g, int64_t z0, int64_t count, const H5::PredType& type,
               T* out) {
  h5::guarded(path, std::string("dataset '") + name + "'",
              str("reading slices ", z0, "..", z0 + count - 1), [&] {
                H5::DataSet dataset = file.openDataSet(name);
                H5::DataSpace file_space = dataset.getSpace();
                const hsize_t start[3] = {static_cast<hsize_t>(z0), 0, 0};
                const hsize_t extent[3] = {static_cast<hsize_t>(count),
                                           static_cast<hsize_t>(g.shape[1]),
                                           static_cast<hsize_t>(g.shape[2])};
                file_space.selectHyperslab(H5S_SELECT_SET, extent, start);
                H5::DataSpace memory_space(3, extent);
                dataset.read(out, type, memory_space, file_space);
              });
}
}  // namespace

void CaseFile::read_image_slice(int64_t z, float* out) const {
  check_slice(z);
  read_slab(*file_, path_, kImageDataset, metadata_.geometry, z, 1, H5::PredType::NATIVE_FLOAT, out);
}

void CaseFile::read_label_slice(int64_t z, LabelUse use, uint8_t* out) const {
  check_label_use(use);
  check_slice(z);
  read_slab(*file_, path_, kLabelDataset, metadata_.geometry, z, 1, H5::PredType::NATIVE_UINT8, out);
}

std::vector<float> CaseFile::read_image() const {
  std::vector<float> out(static_cast<size_t>(metadata_.geometry.voxel_count()));
  read_slab(*file_, path_, kImageDataset, metadata_.geometry, 0, slices(),
            H5::PredType::NATIVE_FLOAT, out.data());
  return out;
}

std::vector<uint8_t> CaseFile::read_label(LabelUse use) const {
  check_label_use(use);
  std::vector<uint8_t> out(static_cast<size_t>(metadata_.geometry.voxel_count()));
  read_slab(*file_, path_, kLabelDataset, metadata_.geometry, 0, slices(),
            H5::PredType::NATIVE_UINT8, out.data());
  return out;
}

}  // namespace cmaf::datastore
