//! A broken header used elsewhere: only the attribute error is reported, not errors from the
//! code that uses the trait.
use meta_protocol_core::BinaryHeader;

#[derive(BinaryHeader, Clone, Debug)]
struct H {
    #[field(offset = 0, corelation)]
    id: u32,
}

fn main() {
    let h = H::peek(&[0; 4]).ok().flatten();
    let _ = h.and_then(|h| h.correlation());
    let _ = H::SIZE;
}
