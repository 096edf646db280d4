use meta_protocol_core::BinaryHeader;

#[derive(BinaryHeader, Clone, Debug)]
#[header(size = 4)]
struct H {
    #[field(offset = 0)]
    a: u16,
    #[field(offset = 2, correlation)]
    id: u32,
}

fn main() {}
