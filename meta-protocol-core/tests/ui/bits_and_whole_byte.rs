use meta_protocol_core::BinaryHeader;

#[derive(BinaryHeader, Clone, Debug)]
struct H {
    #[field(offset = 0)]
    kind: u8,
    #[field(offset = 0, bits = 0x01)]
    flag: bool,
}

fn main() {}
