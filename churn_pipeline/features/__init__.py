"""Pure data logic: the data contract, schemas, synthetic shop, import transforms, point-in-time features."""
