use meta_protocol_core::BinaryHeader;

#[derive(BinaryHeader, Clone, Debug)]
struct H {
    #[field(offset = 0, magic = 0x1ffff)]
    magic: u16,
    #[field(offset = 2, bits = 0x03)]
    flag: bool,
    #[field(offset = 3, width = 9)]
    id: u64,
}

fn main() {}
