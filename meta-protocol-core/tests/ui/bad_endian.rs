use meta_protocol_core::BinaryHeader;

#[derive(BinaryHeader, Clone, Debug)]
#[header(endian = "network")]
struct H {
    #[field(offset = 0)]
    a: u32,
}

fn main() {}
