use meta_protocol_core::BinaryHeader;

#[derive(BinaryHeader, Clone, Debug)]
struct H {
    #[field(offset = 0, magic = b"PRP")]
    magic: [u8; 4],
}

fn main() {}
