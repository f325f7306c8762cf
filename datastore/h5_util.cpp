#include "datastore/h5_util.h"

#include <filesystem>

#include "common/error.h"

namespace cmaf::datastore::h5 {
namespace {
std::string attribute_field(const std::string& name) { return "attribute '" + name + "'"; }

// HDF5 prints its error stack to stderr by default; we report errors ourselves.
void silence_hdf5() {
  static const bool silenced = [] {
    H5::Exception::dontPrint();
    return true;
  }();
  (void)silenced;
}
}  // namespace

void guarded(const std::string& path, const std::string& object, const std::string& doing,
             const std::function<void()>& body) {
  silence_hdf5();
  try {
    body();
  } catch (const H5::Exception& e) {
    throw InputError(path, object,
                     str(doing, " failed (", e.getFuncName(), ": ", e.getDetailMsg(),
                         "): the file is corrupt, truncated or not in the expected layout"));
  }
}

H5::H5File open_read_only(const std::string& path) {
  silence_hdf5();
  if (!std::filesystem::exists(path)) throw InputError(path, "", "file does not exist");
  bool is_hdf5 = false;
  try {
    is_hdf5 = H5::H5File::isHdf5(path);
  } catch (const H5::Exception&) {
    is_hdf5 = false;
  }
  if (!is_hdf5) {
    throw InputError(path, "", "not an HDF5 file (no HDF5 signature: wrong format or truncated)");
  }
  H5::H5File file;
  guarded(path, "", "opening the file", [&] { file.openFile(path, H5F_ACC_RDONLY); });
  return file;
}

void write_string(H5::H5Object& where, const std::string& name, const std::string& value) {
  // Fixed-length, NUL-terminated: readable by h5py, h5dump and MATLAB alike.
  H5::StrType type(H5::PredType::C_S1, value.size() + 1);
  type.setStrpad(H5T_STR_NULLTERM);
  H5::Attribute attribute = where.createAttribute(name, type, H5::DataSpace(H5S_SCALAR));
  attribute.write(type, value.c_str());
}

void write_int(H5::H5Object& where, const std::string& name, int64_t value) {
  H5::Attribute attribute =
      where.createAttribute(name, H5::PredType::STD_I64LE, H5::DataSpace(H5S_SCALAR));
  attribute.write(H5::PredType::NATIVE_INT64, &value);
}

void write_doubles(H5::H5Object& where, const std::string& name, const std::vector<double>& values,
                   const std::vector<hsize_t>& dims) {
  H5::DataSpace space(static_cast<int>(dims.size()), dims.data());
  H5::Attribute attribute = where.createAttribute(name, H5::PredType::IEEE_F64LE, space);
  attribute.write(H5::PredType::NATIVE_DOUBLE, values.data());
}

bool has_attribute(const H5::H5Object& where, const std::string& name) {
  silence_hdf5();
  return where.attrExists(name);
}

std::string read_string(const H5::H5Object& where, const std::string& name,
                        const std::string& path) {
  if (!has_attribute(where, name)) {
    throw InputError(path, attribute_field(name), "missing, expected a string attribute");
  }
  std::string value;
  guarded(path, attribute_field(name), "reading", [&] {
    H5::Attribute attribute = where.openAttribute(name);
    if (attribute.getTypeClass() != H5T_STRING) {
      throw InputError(path, attribute_field(name), "is not a string, expected a string");
    }
    H5::StrType type = attribute.getStrType();
    attribute.read(type, value);
  });
  while (!value.empty() && value.back() == '\0') value.pop_back();
  return value;
}

int64_t read_int(const H5::H5Object& where, const std::string& name, const std::string& path) {
  if (!has_attribute(where, name)) {
    throw InputError(path, attribute_field(name), "missing, expected an integer attribute");
  }
  int64_t value = 0;
  guarded(path, attribute_field(name), "reading", [&] {
    H5::Attribute attribute = where.openAttribute(name);
    if (attribute.getTypeClass() != H5T_INTEGER || attribute.getSpace().getSimpleExtentNpoints() != 1) {
      throw InputError(path, attribute_field(name), "expected a scalar integer");
    }
    attribute.read(H5::PredType::NATIVE_INT64, &value);
  });
  return value;
}

std::vector<double> read_doubles(const H5::H5Object& where, const std::string& name,
                                 size_t expected_count, const std::string& path) {
  if (!has_attribute(where, name)) {
    throw InputError(path, attribute_field(name),
                     str("missing, expected ", expected_count, " floating-point values"));
  }
  std::vector<double> values;
  guarded(path, attribute_field(name), "reading", [&] {
    H5::Attribute attribute = where.openAttribute(name);
    const auto count = static_cast<size_t>(attribute.getSpace().getSimpleExtentNpoints());
    const H5T_class_t type_class = attribute.getTypeClass();
    if (count != expected_count || (type_class != H5T_FLOAT && type_class != H5T_INTEGER)) {
      throw InputError(path, attribute_field(name),
                       str("holds ", count, " values, expected ", expected_count, " numbers"));
    }
    values.resize(count);
    attribute.read(H5::PredType::NATIVE_DOUBLE, values.data());
  });
  return values;
}

std::array<hsize_t, 3> dims3(const H5::DataSet& dataset, const std::string& name,
                             const std::string& path) {
  std::array<hsize_t, 3> dims{0, 0, 0};
  guarded(path, "dataset '" + name + "'", "reading the shape", [&] {
    H5::DataSpace space = dataset.getSpace();
    const int rank = space.getSimpleExtentNdims();
    if (rank != 3) {
      throw InputError(path, "dataset '" + name + "'",
                       str("has ", rank, " dimensions, expected 3 (D x H x W)"));
    }
    space.getSimpleExtentDims(dims.data());
  });
  return dims;
}

}  // namespace cmaf::datastore::h5

