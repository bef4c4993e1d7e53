//! Gives `libspahgc.so` the SONAME of its ABI major version, so hosts link against
//! `libspahgc.so.<major>` and a new major version can be installed beside an old one.

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets the package version");
    if std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libspahgc.so.{major}");
    }
}
