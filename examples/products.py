"""The products of the actuarial basis, and the benefits of one of them."""

import puhui

products = puhui.list_products()
print(products.to_string(index=False))

p = puhui.load_product("huhuibao-2025")
premium = (f"{p.premium_flat_fen / 100:,.2f} yuan" if p.premium_flat_fen is not None
           else "by age")
print(f"\n{p.id}: {p.name}, {p.start} to {p.end}, premium {premium}")
for b in p.benefits:
    print(f"  {b.id:15s} {b.name}")
