use meta_protocol_core::BinaryHeader;

#[derive(BinaryHeader, Clone, Debug)]
struct H<T> {
    #[field(offset = 0)]
    a: u32,
    rest: std::marker::PhantomData<T>,
}

fn main() {}
