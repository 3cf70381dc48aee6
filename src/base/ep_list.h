#ifndef EP_LIST_H
#define EP_LIST_H

/*
 * Intrusive doubly linked lists: a node has prev and next members, a list is a
 * head pointer (NULL when empty). Not thread-safe: the owner serialises.
 */

/** Unlinks node from the list at head (node's own prev and next are left as they were). */
#define EP_DLIST_UNLINK(head, node)                                                                \
    do {                                                                                           \
        if ((node)->prev) {                                                                        \
            (node)->prev->next = (node)->next;                                                     \
        } else {                                                                                   \
            (head) = (node)->next;                                                                 \
        }                                                                                          \
        if ((node)->next) {                                                                        \
            (node)->next->prev = (node)->prev;                                                     \
        }                                                                                          \
    } while (0)

#endif /* EP_LIST_H */
