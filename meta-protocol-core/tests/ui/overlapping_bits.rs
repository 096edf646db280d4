use meta_protocol_core::BinaryHeader;

#[derive(BinaryHeader, Clone, Debug)]
struct H {
    #[field(offset = 0, bits = 0xf0)]
    high: u8,
    #[field(offset = 0, bits = 0x18)]
    mid: u8,
}

fn main() {}
