use meta_protocol_core::BinaryHeader;

#[derive(BinaryHeader, Clone, Debug)]
struct H {
    #[field(offset = 0, bits = 0x0f, width = 2)]
    kind: u8,
}

fn main() {}
