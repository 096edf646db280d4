use meta_protocol_core::BinaryHeader;

#[derive(BinaryHeader, Clone, Debug)]
struct H {
    #[field(offset = 0, magic = 0x1ffff)]
    magic: u16,
}

fn main() {}
