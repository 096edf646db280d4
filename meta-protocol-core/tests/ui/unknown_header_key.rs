use meta_protocol_core::BinaryHeader;

#[derive(BinaryHeader, Clone, Debug)]
#[header(size = 4, order = "big")]
struct H {
    #[field(offset = 0)]
    a: u32,
}

fn main() {}
