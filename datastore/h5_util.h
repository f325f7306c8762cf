// Small typed layer over the HDF5 C++ API: attributes, 3-D datasets, error translation.
//
// Every helper takes the file path for messages; an H5::Exception never escapes: it becomes an
// InputError (the file is not what it should be) naming file, object and HDF5's own detail.
#pragma once

#include <H5Cpp.h>

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace cmaf::datastore::h5 {

// Runs `body`, turning H5::Exception into InputError(path, object, "<doing> failed: <detail>").
void guarded(const std::string& path, const std::string& object, const std::string& doing,
             const std::function<void()>& body);

// Opens an existing file read-only; a missing, non-HDF5 or truncated file is an InputError.
H5::H5File open_read_only(const std::string& path);

void write_string(H5::H5Object& where, const std::string& name, const std::string& value);
void write_int(H5::H5Object& where, const std::string& name, int64_t value);
void write_doubles(H5::H5Object& where, const std::string& name, const std::vector<double>& values,
                   const std::vector<hsize_t>& dims);

bool has_attribute(const H5::H5Object& where, const std::string& name);
// Readers throw InputError(path, "attribute '<name>'", ...) if missing or of the wrong kind.
std::string read_string(const H5::H5Object& where, const std::string& name, const std::string& path);
int64_t read_int(const H5::H5Object& where, const std::string& name, const std::string& path);
std::vector<double> read_doubles(const H5::H5Object& where, const std::string& name,
                                 size_t expected_count, const std::string& path);

// Dims of a dataset, which must be 3-D; otherwise InputError naming dataset and rank.
std::array<hsize_t, 3> dims3(const H5::DataSet& dataset, const std::string& name,
                             const std::string& path);

}  // namespace cmaf::datastore::h5
