import { NavLink, Outlet } from 'react-router-dom';

const LINKS = [
  { to: '/', label: 'Home', end: true },
  { to: '/notifications', label: 'Notifications' },
  { to: '/search', label: 'Search' },
  { to: '/messages', label: 'Messages' },
];

/** The page frame: brand, navigation, and the current page. */
export default function Layout() {
  return (
    <div className="app">
      <header className="sidebar">
        <NavLink to="/" className="brand" aria-label="Cruddur home">
          Cruddur
        </NavLink>
        <nav aria-label="Main">
          {LINKS.map((link) => (
            <NavLink key={link.to} to={link.to} end={link.end}>
              {link.label}
            </NavLink>
          ))}
        </nav>
      </header>
      <main className="content">
        <Outlet />
      </main>
    </div>
  );
}
