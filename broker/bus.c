/*
 * The seam's one variable: which bus is active. Kept apart from both implementations
 * so that low modules (streams formatting a reset's id, channels asking for a floor)
 * reach the bus through this pointer without a call edge to either implementation.
 */
#include "bus.h"

const struct bus_ops *bus;
