use meta_protocol_core::BinaryHeader;

#[derive(BinaryHeader, Clone, Debug)]
struct H {
    #[field(offset = 0)]
    a: u8,
    b: u16,
}

fn main() {}
