// rstest's #[files("suites/*.yaml")] expands at compile time: rebuild when suites change.
fn main() {
    println!("cargo::rerun-if-changed=suites");
}
