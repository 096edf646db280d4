use meta_protocol_core::BinaryHeader;

#[derive(BinaryHeader, Clone, Debug)]
struct H {
    #[field(offset = 0, magic = 0xda, meta)]
    magic: u8,
}

fn main() {}
