use meta_protocol_core::BinaryHeader;

#[derive(BinaryHeader, Clone, Debug)]
struct H {
    #[field(offset = 0, offset = 1)]
    a: u8,
}

fn main() {}
